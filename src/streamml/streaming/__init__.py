"""Kafka clients, topics and the streaming workers."""
