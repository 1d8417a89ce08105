"""Generates Hearth's stand-in provider templates from Heat's own resource plugins.

Run with the Heat venv's python; prints one JSON object on stdout:
    {"resource_registry": {"OS::Nova::Server": "standins/os-nova-server.yaml", ...},
     "files": {"standins/os-nova-server.yaml": "<HOT text>", ...}}
to be merged into a stack-create body's `environment.resource_registry` and `files`.

Why generated: with no Nova, Neutron, Cinder or Octavia, Heat answers "Service X is not available" for
their types. A provider template mapped in the environment takes their place, and Heat checks it against
the real type (the "facade"): every required property must be a parameter of matching type and every
attribute an output. Generating the parameters from the real `properties_schema` makes the stand-in
accept exactly the property names the real type accepts (an unknown one is refused with "Unknown
Property", as by the real type), with the same HOT types, defaults and the constraints Heat can check
without a service (allowed values, ranges, lengths, patterns). Constraints that ask a service (an image
exists, a flavor exists) cannot be checked here and are left out; so is validation inside list and map
values (the keys of a `networks` entry).

Outputs are plausible values, never addresses anyone could reach: fixed addresses 10.0.1xx.1yy (inside
10.0.0.0/16), floating addresses 172.24.4.1xx (inside 172.24.4.0/24), MACs fa:16:3e:00:xx:yy from the
same digits, ids from the stand-in's own stack id. The digits come from RandomStrings, so addresses
differ between resources, though two may still collide (one in 10,000 for a pair of fixed addresses, one
in 100 for floating ones). A stand-in cannot see another's outputs: a server's addresses are its own,
not its port's. The server stand-in also outputs the exact `user_data` and `user_data_format` it
received, so a test can read them back as resource attributes.
"""

from oslo_service import backend

backend.init_backend(backend.BackendType.THREADING)

import json  # noqa: E402
import sys  # noqa: E402

import yaml  # noqa: E402

from heat.engine import constraints as heat_constraints  # noqa: E402
from heat.engine import properties  # noqa: E402
from heat.engine import resources  # noqa: E402

TEMPLATE_VERSION = "2018-08-31"

TYPES = [
    "OS::Nova::Server",
    "OS::Nova::ServerGroup",
    "OS::Neutron::Net",
    "OS::Neutron::Subnet",
    "OS::Neutron::Router",
    "OS::Neutron::RouterInterface",
    "OS::Neutron::Port",
    "OS::Neutron::FloatingIP",
    "OS::Neutron::FloatingIPAssociation",
    "OS::Neutron::SecurityGroup",
    "OS::Neutron::SecurityGroupRule",
    "OS::Cinder::Volume",
    "OS::Cinder::VolumeAttachment",
    "OS::Octavia::LoadBalancer",
    "OS::Octavia::Listener",
    "OS::Octavia::Pool",
    "OS::Octavia::PoolMember",
    "OS::Octavia::HealthMonitor",
]

S = properties.Schema
HOT_TYPE = {
    S.STRING: "string",
    S.INTEGER: "number",
    S.NUMBER: "number",
    S.BOOLEAN: "boolean",
    S.LIST: "comma_delimited_list",
    S.MAP: "json",
}
NEUTRAL = {S.STRING: "", S.INTEGER: 0, S.NUMBER: 0, S.BOOLEAN: False, S.LIST: [], S.MAP: {}}


def file_name(type_name):
    return "standins/%s.yaml" % type_name.lower().replace("::", "-")


def param(p):
    return {"get_param": p}


def attr(resource, *path):
    return {"get_attr": [resource] + list(path)}


def join(*parts):
    return {"list_join": ["", list(parts)]}


def stack_id():
    return param("OS::stack_id")


def short_id():
    return {"str_split": ["-", stack_id(), 0]}


def random_digits(res, name, length, alphabet="0123456789"):
    """Adds a RandomString of `length` characters from `alphabet`; returns its value."""
    # No character classes: RandomString's default class (letters and digits) would add to the mix.
    res[name] = {"type": "OS::Heat::RandomString",
                 "properties": {"length": length, "character_classes": [],
                                "character_sequences": [{"sequence": alphabet, "min": length}]}}
    return attr(name, "value")


def fixed_address(res):
    # 10.0.1xy.1zw: one of 10,000 addresses inside 10.0.0.0/16.
    return join("10.0.1", random_digits(res, "octet3", 2), ".1", random_digits(res, "octet4", 2))


def mac_address(res):
    # fa:16:3e (OpenStack's prefix), then the fixed address's random digits (decimal digits are hex
    # digits too): unique exactly when the address is, with no RandomString of its own (each resource
    # in a stand-in costs Heat a little, times every node of a cluster).
    return join("fa:16:3e:00:", random_digits(res, "octet3", 2), ":", random_digits(res, "octet4", 2))


def parameter(name, schema):
    p = {"type": HOT_TYPE[schema.type]}
    if schema.description:
        p["description"] = str(schema.description)
    checkable = [c for c in schema.constraints
                 if not isinstance(c, heat_constraints.CustomConstraint)]
    if schema.default is not None:
        p["default"] = schema.default
    elif not schema.required:
        p["default"] = neutral_default(schema, checkable)
    # A default that breaks a constraint would make the stand-in itself invalid: keep only the
    # constraints the default meets (where the real type has no default, nothing is lost: its absent
    # value is not checked either).
    fitting = [dict(c) for c in checkable if fits(c, p.get("default"), schema)]
    if fitting:
        p["constraints"] = fitting
    return p


def fits(constraint, value, schema):
    if value is None:
        return True
    try:
        constraint.validate(value, schema)
        return True
    except ValueError:
        return False


def neutral_default(schema, checkable):
    """A default for an optional property that has none, meeting the constraints where it can."""
    value = NEUTRAL[schema.type]
    for c in checkable:
        if fits(c, value, schema):
            continue
        if isinstance(c, heat_constraints.AllowedValues) and c.allowed:
            value = c.allowed[0]
        elif isinstance(c, heat_constraints.Length):
            if schema.type == S.STRING:
                value = "x" * (c.min or 0)
        elif isinstance(c, heat_constraints.Range):
            value = c.min if c.min is not None else c.max
    return value


def generic_output(name, attribute_schema, parameter_names):
    if name in parameter_names:
        return param(name)
    if name == "id" or name.endswith("_id"):
        return stack_id()
    kind = getattr(attribute_schema, "type", None)
    return {S.MAP: {}, S.LIST: [], S.INTEGER: 0, S.BOOLEAN: False}.get(kind, "")


def specials(type_name):
    """What a type outputs beyond the generic values: (resources, outputs, conditions)."""
    res, out, cond = {}, {}, {}
    if type_name == "OS::Nova::Server":
        cond["name_given"] = {"not": {"equals": [param("name"), ""]}}
        name = {"if": ["name_given", param("name"), param("OS::stack_name")]}
        address = fixed_address(res)
        out.update({
            "name": name,
            "first_address": address,
            "accessIPv4": address,
            "accessIPv6": "",
            "networks": {"private": [address]},
            "addresses": {"private": [{
                "addr": address, "version": 4, "OS-EXT-IPS:type": "fixed",
                "OS-EXT-IPS-MAC:mac_addr": mac_address(res)}]},
            "instance_name": join("instance-", short_id()),
            "console_urls": {},
            "os_collect_config": {},
            "tags": param("tags"),
            "user_data": param("user_data"),
            "user_data_format": param("user_data_format"),
            "show": {"id": stack_id(), "name": name, "status": "ACTIVE",
                     "metadata": param("metadata")},
        })
    elif type_name == "OS::Neutron::Port":
        address = fixed_address(res)
        out.update({
            "fixed_ips": [{"ip_address": address, "subnet_id": join("subnet-of-", stack_id())}],
            "mac_address": mac_address(res),
            "status": "ACTIVE",
            "network_id": param("network"),
            "network": {"id": param("network")},
            "show": {"id": stack_id(), "status": "ACTIVE",
                     "fixed_ips": [{"ip_address": address}]},
        })
    elif type_name == "OS::Neutron::FloatingIP":
        out.update({
            # 172.24.4.1xy: one of 100 addresses inside 172.24.4.0/24.
            "floating_ip_address": join("172.24.4.1", random_digits(res, "octet4", 2)),
            "floating_network_id": param("floating_network"),
            "router_id": join("router-of-", stack_id()),
        })
    elif type_name == "OS::Octavia::LoadBalancer":
        cond["vip_given"] = {"not": {"equals": [param("vip_address"), ""]}}
        out.update({
            "vip_address": {"if": ["vip_given", param("vip_address"), fixed_address(res)]},
            "vip_port_id": join("port-of-", stack_id()),
            "vip_subnet_id": param("vip_subnet"),
        })
    elif type_name == "OS::Cinder::Volume":
        out.update({"status": "available"})
    return res, out, cond


def template(type_name):
    cls = resources.global_env().get_class(type_name)
    schemata = properties.schemata(cls.properties_schema)
    params = {n: parameter(n, s) for n, s in sorted(schemata.items()) if s.implemented}
    res, out, cond = specials(type_name)
    attrs = dict(cls.attributes_schema)
    attrs.update(cls.base_attributes_schema)
    outputs = {"OS::stack_id": {"value": stack_id()}}
    for name, schema in sorted(attrs.items()):
        value = out[name] if name in out else generic_output(name, schema, params)
        outputs[name] = {"value": value}
    for name in ("user_data", "user_data_format"):
        if name in out:
            outputs[name] = {"value": out[name]}
    doc = {
        "heat_template_version": TEMPLATE_VERSION,
        "description": "Hearth test stand-in for %s, generated from Heat's own plugin %s.%s"
                       % (type_name, cls.__module__, cls.__name__),
        "parameters": params,
    }
    if cond:
        doc["conditions"] = cond
    # A provider template needs at least one resource; a no-op keeps the stand-in cheap.
    doc["resources"] = res or {"placeholder": {"type": "OS::Heat::None"}}
    doc["outputs"] = outputs
    return yaml.dump(doc, Dumper=NoAliasDumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True)


class NoAliasDumper(yaml.SafeDumper):
    """Writes repeated values out in full: `&id001` anchors would only puzzle a reader."""

    def ignore_aliases(self, data):
        return True


def main():
    resources.initialise()
    registry, files = {}, {}
    for type_name in TYPES:
        registry[type_name] = file_name(type_name)
        files[file_name(type_name)] = template(type_name)
    json.dump({"resource_registry": registry, "files": files}, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
