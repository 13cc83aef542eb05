"""The OpenAPI 3.1 document of the HTTP API, generated from the marshmallow schemas.

janus/routes.py is the table of every route; it gives each its operations, described in
operations.py (and jobs.py, config.py, history.py) with the examples of examples.py;
components.py holds what they share; document.py turns them into the document that
GET /openapi.json serves.
"""
