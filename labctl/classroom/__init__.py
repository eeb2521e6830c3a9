"""The classroom: one seat (an all-in-one DevStack machine) per trainee.

- seats.py        the `classroom:` section of lab.yaml -> Classroom and its Seats
- access.py       how a trainee's laptop reaches its seat: TCP ports on the host forwarded to the seat
- forward.py      the forwarder itself: a byte pump with per-client limits, run as labctl's daemon
- tunnels.py      its SSH connections to the hosts of seats on other hypervisor hosts
- sheet.py        what the trainer hands out: HTML cards, CSV and Markdown (pure renderers)
- networks.py     seats on lab networks of their own, keeping the template's name and address (compute)

Stacking a classroom once and cloning it is a strategy of stacking: labctl.stacking.clone.
"""
