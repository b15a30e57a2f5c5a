"""``engine batch``: OpenAI Batch API input lines in, OpenAI batch output lines out, each answer
appended whole as it arrives, so a rerun with the same output file asks only what is missing.

``lines`` reads the input (malformed lines reported, duplicate ``custom_id``s refused) and the
output of an earlier run (a torn last line repaired); ``shape`` writes OpenAI's shapes;
``run`` routes the lines (``Engine.route_many``) and appends each outcome; ``progress`` draws
the bar and the summary; ``cli`` is the command.
"""
