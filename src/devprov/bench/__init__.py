"""`devprov bench`: a fleet of virtual devices against devprov, beside a bare-TLS baseline."""
