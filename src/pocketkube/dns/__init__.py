"""Cluster DNS: the `cluster.local` zone as CoreDNS's kubernetes plugin serves it, from
informers on Services, EndpointSlices and Namespaces; other names forwarded to the host's
resolvers. A component: it sees the cluster only through the client."""
