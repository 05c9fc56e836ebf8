"""The built-in Ingress controller (IngressClass `pocketkube`): routing.py (pure routing table from
Ingresses, Services, EndpointSlices and Secrets), proxy.py (the aiohttp reverse proxy), tls.py
(SNI), controller.py (informers, status, Events, its LoadBalancer Service)."""
