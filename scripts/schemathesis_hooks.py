"""Schemathesis hooks for scripts/schemathesis.sh (loaded through
SCHEMATHESIS_HOOKS).

`POST /api/dlq/import` takes `application/x-ndjson`, a media type
schemathesis has no serializer for. Its body is text (one JSON document per
line), described in the API document as a string: it is sent as text/plain
bodies are, with the NDJSON content type.
"""

import schemathesis

schemathesis.serializer.alias("application/x-ndjson", "text/plain")
