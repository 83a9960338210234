"""Modules generated from ``qtasks.proto`` (QTasks' ``qtasks.v1`` protocol) by ``generate.sh``; do not edit."""
