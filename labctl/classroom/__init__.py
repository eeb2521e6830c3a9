"""The classroom: one seat (an all-in-one DevStack machine) per trainee.

- seats.py   the `classroom:` section of lab.yaml -> Classroom and its Seats; each seat's secrets
- access.py  how a trainee's laptop reaches its seat: TCP ports on the host forwarded to the seat
- sheet.py   what the trainer hands out: HTML cards, CSV and Markdown (pure renderers)
"""
