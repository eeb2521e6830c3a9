#!/usr/bin/env python3
"""A stand-in for the `openstack` client, for labctl.cloud.guest's unit tests: the real client needs a
real cloud (Glance, Nova, Neutron), which only the compute DevStack test has (marker devstack_compute).
It keeps its cloud in the JSON file $FAKE_OS_STATE and answers the few commands the script uses, as
the real client prints them with `-f json`. $FAKE_OS_FAIL names a command prefix ("image create tiny")
that fails the way a broken upload does: the image is left queued."""

import json
import os
import sys
import uuid
from pathlib import Path

state_file = os.environ["FAKE_OS_STATE"]
state = json.loads(Path(state_file).read_text()) if os.path.exists(state_file) else {
    "images": [], "flavors": {}, "keypairs": {}, "projects": {"admin": "p-admin", "demo": "p-demo"},
    "rules": {"sg-p-admin": [], "sg-p-demo": []}, "calls": [],
    "catalog": ["identity", "compute", "network", "image"],
    "services": [{"Binary": b, "Host": "aio", "State": "up", "Status": "enabled"}
                 for b in ("nova-scheduler", "nova-conductor", "nova-compute")],
    "agents": [{"Agent Type": t, "Host": "aio", "Alive": True} for t in ("OVN Controller agent", "OVN Metadata agent")]}
args = [a for a in sys.argv[1:]]
if args[-2:] == ["-f", "json"]:
    args = args[:-2]
state["calls"].append(" ".join(args))


def save():
    with open(state_file, "w") as f:
        json.dump(state, f)


def out(data):
    save()
    print(json.dumps(data) if not isinstance(data, str) else data)
    sys.exit(0)


def fail(text):
    save()
    print(text, file=sys.stderr)
    sys.exit(1)


def option(name, default=None):
    return args[args.index(name) + 1] if name in args else default


if os.environ.get("FAKE_OS_FAIL") and " ".join(args).startswith(os.environ["FAKE_OS_FAIL"]):
    if args[:2] == ["image", "create"]:
        state["images"].append({"ID": str(uuid.uuid4()), "Name": args[2], "Status": "queued", "properties": {}})
    fail("HttpException: 500: Server Error for url: http://10.0.0.1/image/v2/images, the upload broke")

match args[:2]:
    case ["compute", "service"]:
        out(state["services"])
    case ["network", "agent"]:
        out(state["agents"])
    case ["image", "list"]:
        out([{k: i[k] for k in ("ID", "Name", "Status")} for i in state["images"] if i["Name"] == option("--name")])
    case ["image", "delete"]:
        state["images"] = [i for i in state["images"] if i["ID"] != args[2]]
        out("")
    case ["image", "create"]:
        if not os.path.isfile(option("--file")):
            fail(f"[Errno 2] No such file or directory: '{option('--file')}'")
        props = dict(args[i + 1].split("=", 1) for i, a in enumerate(args) if a == "--property")
        image = {"ID": str(uuid.uuid4()), "Name": args[2], "Status": "active", "properties": props,
                 "disk_format": option("--disk-format"), "container_format": option("--container-format"),
                 "public": "--public" in args, "bytes": Path(option("--file")).read_text(errors="replace")}
        state["images"].append(image)
        out({"id": image["ID"], "name": image["Name"]})
    case ["flavor", "show"]:
        if args[2] not in state["flavors"]:
            fail(f"No Flavor found for {args[2]}")
        out(state["flavors"][args[2]])
    case ["flavor", "create"]:
        state["flavors"][args[2]] = {"ram": int(option("--ram")), "disk": int(option("--disk")),
                                     "vcpus": int(option("--vcpus"))}
        out(state["flavors"][args[2]])
    case ["keypair", "show"]:
        if args[-1] not in state["keypairs"]:
            fail(f"No keypair with a name or ID of '{args[-1]}' exists.")
        out(state["keypairs"][args[-1]])
    case ["keypair", "delete"]:
        del state["keypairs"][args[2]]
        out("")
    case ["keypair", "create"]:
        state["keypairs"][args[-1]] = Path(option("--public-key")).read_text().strip()
        out({"name": args[-1]})
    case ["project", "show"]:
        if args[2] not in state["projects"]:
            fail(f"No project with a name or ID of '{args[2]}' exists.")
        out({"id": state["projects"][args[2]], "name": args[2]})
    case ["security", "group"] if args[2] == "list":
        out([{"ID": f"sg-{option('--project')}", "Name": "default"}])
    case ["security", "group"] if args[2:4] == ["rule", "list"]:
        out(state["rules"][args[4]])
    case ["security", "group"] if args[2:4] == ["rule", "create"]:
        port = option("--dst-port")
        rule = {"ID": str(uuid.uuid4()), "IP Protocol": option("--protocol"), "Ethertype": option("--ethertype"),
                "IP Range": option("--remote-ip"), "Port Range": f"{port}:{port}" if port else "",
                "Direction": "ingress" if "--ingress" in args else "egress"}
        state["rules"][args[-1]].append(rule)
        out(rule)
fail(f"fake openstack: unknown command {args}")
