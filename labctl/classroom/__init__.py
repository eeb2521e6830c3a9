"""The classroom: one seat (an all-in-one DevStack machine) per trainee.

- seats.py        the `classroom:` section of lab.yaml -> Classroom and its Seats; each seat's secrets
- access.py       how a trainee's laptop reaches its seat: TCP ports on the host forwarded to the seat
- forward.py      the forwarder itself: a byte pump with per-client limits, run as labctl's daemon
- sheet.py        what the trainer hands out: HTML cards, CSV and Markdown (pure renderers)
- clone.py        a classroom at the speed of one seat: seat-01 stacked once, every seat made from its disk
- clone_guest.py  what runs inside each copy to make it its own seat (pure text)
"""
