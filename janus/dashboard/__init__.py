"""The dashboard's files: index.html, dashboard.css and dashboard.js, served as they are.

Plain HTML, CSS and JavaScript with no build step and nothing from elsewhere: the page talks
to this service's own /dashboard routes (docs/dashboard.md).
"""
