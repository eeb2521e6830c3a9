"""The host's caches, shared by every lab: one download of each Debian package and each Python
package, however many machines and labs ask for it.

- services.py: the caches themselves (apt-cacher-ng for Debian/Ubuntu packages, devpi-server for
  PyPI), started and stopped by labctl, and what `labctl cache` reports of them;
- guest.py: what a machine is given so that it uses them (pure).
"""
