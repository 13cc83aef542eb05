"""What the tests share, so that no test module imports from another.

  seed.py         the seed API's example requests, verbatim: the one copy
  bodies.py       request bodies for the job routes, named as the seed's examples name theirs
  app.py          the real app in-process behind Falcon's test client; the routes, put_config,
                  the service token
  factories.py    users, configs and limits, set through the real SQL; a job's or a bucket's
                  stored row, bucket levels and job counts, read back
  answers.py      the one error shape and the contract's decisions and reasons, checked on any
                  response
  hostile.py      hypothesis strategies (hostile and valid input), JSON written token by token
  raw_http.py     HTTP/1.1 byte for byte on a socket, for what only a real server sees
  burst.py        many requests at once against real gunicorn, and the jobs and costs read back
  queue.py        the queue's routes in-process: submit, claim, end a lease; a job's queue row
  history.py      jobs written straight into the table, with the times and states a test needs
  plans.py        EXPLAIN's plans as a list of nodes, for the tests that hold a query to its index
  request_log.py  gunicorn's output read as the request log's lines, each checked
  fixtures.py     users any test module may ask for (a pytest plugin conftest.py registers)
  browser.py      headless Chromium and the steps of the dashboard's browser tests (a plugin too)

Test modules import from here; a module's own example tables stay next to its tests.
"""
