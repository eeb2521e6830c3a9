"""The cloud inside a stacked machine: what lab.yaml's `cloud:` asks to exist there on day one
(images, flavors, a keypair, security-group rules), made by labctl once DevStack has stacked."""
