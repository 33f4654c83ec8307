"""A second Pulumi program that consumes the stable-diffusion stack through its outputs."""

from consumer import main

main()
