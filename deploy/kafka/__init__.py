"""Kafka users, ACLs and topics generated from deploy/topics.yaml."""
