"""Cloud route tables as the cluster's router: AWS, GCE and Azure.

`contract`: what a cloud supplies (`CloudProvider`, its `CloudTable`s); `sync`: the one pass
every cloud shares; `aws`, `gce`, `azure`: the providers, each the only importer of its SDK;
`factory`: a provider from the options the CLI and the controller take. The providers stand on
the contract only, and only the factory knows the providers: no import runs in a circle.
"""
