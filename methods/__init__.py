"""Attribution method plugins (one module per method, registered through `bench.methods` entry points)."""
