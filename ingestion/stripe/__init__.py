"""Ingesting Stripe: the reader seam, the pure translation, the ingester, the webhooks."""
