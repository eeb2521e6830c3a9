"""The developer's loop (issue 22): their own checkouts stacked in the machines, and later changes
brought in.

- worktree.py   a checkout's working tree, uncommitted changes and new files included, as one commit
                in labctl's served copy of it (the checkout itself is never written to)
- sync.py       `labctl sync PROJECT`: that commit brought into the machines' DevStack
- guest.py      what runs in a machine for it: fetch, check out, reinstall if need be, restart, roll back
"""
