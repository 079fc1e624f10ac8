"""Alert sinks: consumers of ``alerts.events`` that write each event somewhere.

* :mod:`alerts.sinks.base` -- :class:`BaseSink` (batching, flush outcome rules)
* :mod:`alerts.sinks.line_protocol` -- :class:`Point` and InfluxDB escaping
* :mod:`alerts.sinks.influx` -- :class:`InfluxSink` (v1 ``/write`` or v2 API)
* :mod:`alerts.sinks.webhook_forwarder` -- :class:`WebhookForwarder`
* :mod:`alerts.sinks.deadletter` -- records on ``alerts.deadletter``
* :mod:`alerts.sinks.consumer` -- :class:`SinkConsumer`, the at-least-once loop
* :mod:`alerts.sinks.command` -- ``cityeye sinks`` and :func:`run_sinks`
"""
