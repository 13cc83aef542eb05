"""What the tests share, so that no test module imports from another.

  app.py        the real app in-process behind Falcon's test client; the job routes
  factories.py  users, configs and bucket levels, set and read through the real SQL

Test modules import from here; a module's own example tables stay next to its tests.
"""
