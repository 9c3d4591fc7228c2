"""Errors of the Kafka adapters: the Kafka clients' exceptions are translated into these at the edge."""


class ConsumersError(Exception):
    """Root of every error the Kafka adapters raise on purpose; the message says what went wrong."""


class BrokerUnavailable(ConsumersError):
    """No Kafka broker answered at the configured bootstrap address in time."""
