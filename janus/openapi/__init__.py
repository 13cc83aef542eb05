"""The OpenAPI 3.1 document of the HTTP API, generated from the marshmallow schemas.

operations.py is the table of every route and method; answers.py the shapes of the answers
the resources build; document.py turns them into the document that GET /openapi.json serves.
"""
