"""The bare twin: the least an HTTP admission service on Falcon and Postgres can do per job.

`make bench` runs it next to Janus as a ceiling (bench/README.md): app.py is its Falcon app,
twin.sql its schema and functions, wsgi.py and gunicorn.conf.py how gunicorn serves it,
database.py and server.py how the bench loads the schema and starts it. Nothing here imports
Janus at run time but the gunicorn worker class, which gunicorn.conf.py takes from Janus's.
"""
