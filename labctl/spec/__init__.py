"""The lab spec: a declarative YAML file validated when it is loaded."""
