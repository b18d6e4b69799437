"""Outbound webhooks: Standard Webhooks signatures and the delivery retry schedule."""
