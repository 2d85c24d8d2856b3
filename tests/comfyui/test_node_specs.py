"""Our table of ComfyUI node slots (comfy_graph.NODE_SPECS: the UI-format workflow's widget order and link types)
against the REAL server's /object_info, node by node: input names in ComfyUI's order, link types, outputs."""

import pytest

from app.metadata.comfy_graph import NODE_SPECS, WIDGET_TYPES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def object_info(comfyui_server):
    return comfyui_server.get("/object_info")


@pytest.mark.parametrize("node", sorted(NODE_SPECS))
def test_our_node_table_is_the_servers(object_info, node):
    info = object_info[node]
    order = info.get("input_order") or {k: list(v) for k, v in info["input"].items()}
    names = [*order.get("required", []), *order.get("optional", [])]
    ours = NODE_SPECS[node]
    assert [n for n, _ in ours.inputs] == names[: len(ours.inputs)]
    assert set(names[len(ours.inputs) :]) <= set(order.get("optional", []))  # only optional ones left out
    inputs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
    for name, kind in ours.inputs:
        theirs = inputs[name][0]
        if kind in WIDGET_TYPES:  # a combo is a list of choices (or "COMBO" in newer schemas)
            assert isinstance(theirs, list) or theirs in (kind, "COMBO"), (name, theirs)
        else:
            assert theirs == kind, (name, theirs)
    assert list(info["output"]) == [t for _, t in ours.outputs]
