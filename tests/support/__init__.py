"""What the tests share, so that no test module imports from another.

  seed.py       the seed API's example requests, verbatim: the one copy
  bodies.py     request bodies for the job routes, named as the seed's examples name theirs
  app.py        the real app in-process behind Falcon's test client; the job routes
  factories.py  users, configs and bucket levels, set and read through the real SQL
  answers.py    the one error shape and the contract's decisions, checked on any response
  hostile.py    hypothesis strategies (hostile and valid input), JSON written token by token
  raw_http.py   HTTP/1.1 byte for byte on a socket, for what only a real server sees
  burst.py      many requests at once against real gunicorn, and the jobs and costs read back
  fixtures.py   users any test module may ask for (a pytest plugin conftest.py registers)

Test modules import from here; a module's own example tables stay next to its tests.
"""
