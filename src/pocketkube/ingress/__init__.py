"""The built-in Ingress controller (IngressClass `pocketkube`): routing.py (the pure routing table
from Ingresses, Services, EndpointSlices and Secrets), proxy.py (client connections) and
backends.py (pooled backend connections): the reverse proxy; tls.py (SNI); controller.py
(informers, status, Events, its LoadBalancer Service)."""
