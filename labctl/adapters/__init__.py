"""Adapters: each owns one outside system and is the only importer of its library. Use-cases never
import them: they see the ports of labctl.protocols, and the Context (labctl.context) makes adapters."""
