"""What tests and scripts use to drive the product: scratch databases, fleets, kill trials."""
