"""How API processes tell scoring workers about new events: NATS JetStream (scale-out)."""
