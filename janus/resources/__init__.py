"""Falcon resources, one module per family of routes: parse, call the domain, respond."""
