"""What the tests share, so that no test module imports from another.

  seed.py       the seed API's example requests, verbatim: the one copy
  bodies.py     request bodies for the job routes, named as the seed's examples name theirs
  app.py        the real app in-process behind Falcon's test client; the job routes
  factories.py  users, configs and bucket levels, set and read through the real SQL

Test modules import from here; a module's own example tables stay next to its tests.
"""
