"""Modules generated from ``qtasks_fast.proto`` (the ``qtasks_fast.v1`` protocol) by ``generate.sh``; do not edit."""
