"""A compiled-schema cache for python3-saml's ``OneLogin_Saml2_XML.validate_xml``.

python3-saml 1.16 re-reads and recompiles its protocol XSD (with its imports) on every strict
``is_valid``, about 1.5 ms of each sign-in. ``install()`` swaps in a function with the same
contract that compiles each schema once per thread (lxml validators are not shared between
threads). It replaces a library method process-wide, so it is installed once, from
``FederationConfig.ready()``, and only on a python3-saml version whose ``validate_xml`` it was
written against: on any other version it refuses with a log line and the library's own
function stays in place (slower, equally strict).
"""

from __future__ import annotations

import importlib.metadata
import logging
import threading
from pathlib import Path
from typing import Any

import onelogin.saml2
from lxml import etree
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML

logger = logging.getLogger(__name__)

# Versions whose validate_xml(xml, schema, debug) has the contract _validate_xml_cached keeps:
# the document as an etree element when valid, "unloaded_xml" or "invalid_xml" otherwise.
WRITTEN_FOR = frozenset({"1.16.0"})

_STOCK_VALIDATE_XML = OneLogin_Saml2_XML.validate_xml
_schemas = threading.local()


def _validate_xml_cached(xml: Any, schema: str, debug: bool = False) -> Any:
    try:
        xml = OneLogin_Saml2_XML.to_etree(xml)
    except Exception:
        return "unloaded_xml"
    compiled_by_name: dict[str, etree.XMLSchema] = _schemas.__dict__.setdefault("by_name", {})
    compiled = compiled_by_name.get(schema)
    if compiled is None:
        schema_file = Path(onelogin.saml2.__file__).parent / "schemas" / schema
        with open(schema_file, "rb") as f_schema:
            compiled = etree.XMLSchema(etree.parse(f_schema))
        compiled_by_name[schema] = compiled
    if not compiled.validate(xml):
        return "invalid_xml"
    return xml


def library_version() -> str:
    return importlib.metadata.version("python3-saml")


def install(*, found: str | None = None) -> bool:
    """Install the cache in python3-saml. Returns False (and logs why) on an unknown version.

    ``found`` stands for the installed version (``library_version()`` when not given).
    """
    version = found or library_version()
    if version not in WRITTEN_FOR:
        logger.warning(
            "SAML schema cache not installed: it was written for python3-saml %s, found %s; "
            "responses are still validated, by the library's slower validate_xml",
            ", ".join(sorted(WRITTEN_FOR)),
            version,
        )
        return False
    OneLogin_Saml2_XML.validate_xml = staticmethod(_validate_xml_cached)
    return True


def uninstall() -> None:
    """Put python3-saml's own ``validate_xml`` back."""
    OneLogin_Saml2_XML.validate_xml = staticmethod(_STOCK_VALIDATE_XML)


def installed() -> bool:
    return OneLogin_Saml2_XML.validate_xml is _validate_xml_cached
