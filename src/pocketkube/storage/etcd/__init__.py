"""etcd as the store: the v3 gRPC API through aetcd's generated stubs, a thin asyncio client of
our own (several endpoints, TLS, retries) and a backend that mirrors the whole prefix in memory."""
