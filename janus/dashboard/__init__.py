"""The dashboard's files: index.html, dashboard.css and dashboard.js, served as they are.

Plain HTML, CSS and JavaScript with no build step and nothing from elsewhere: the page talks
to this service's own /dashboard routes (docs/api.md#dashboard). janus/resources/dashboard.py
serves them; the OpenAPI document and the service token's open paths read FILES too.
"""

# Route: (file of this package, its media type).
FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
    "/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
}
