"""Marshmallow schemas: requests.py is what a valid body, query or config is, answers.py what
every answer is (the resources dump their answers with them, through dumping.py's
AnswerSchema), fields.py Janus's own fields."""
