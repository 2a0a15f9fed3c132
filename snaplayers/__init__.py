"""snaplayers: an Amanda script plugin that snapshots, assembles, maps and mounts layered volumes."""

__version__ = "0.1.0"
