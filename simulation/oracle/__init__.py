"""The fleet's own, independent implementation of rules v1: it imports nothing of domain/."""
