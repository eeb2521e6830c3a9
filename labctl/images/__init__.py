"""Stacked images (issue 22): a machine's disk once DevStack stacked on it, kept on the host so that a
later lab that would stack the same thing starts from it instead of running stack.sh again.

- key.py   what a stack depends on (box, DevStack, every repository's commit, local.conf less its
           addresses and passwords) as a StackKey, and why an image is stale (its differences)
"""
