"""The review service over HTTP: the JSON API, the server-rendered pages and the guards every
request goes through. Only this package (and ``service``, which wires it) speaks HTTP; the work
itself is in ``dedup.adjudication.operations``."""
