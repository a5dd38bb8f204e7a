"""WorkflowTemplates (issue 27, point 4), without a cluster: arguments checked against the
parameters, naming each wrong one, and the spec a Workflow made from a template runs."""

from typing import Any

import pytest

from foundation_common.workflows import templates
from foundation_common.workflows.api import TemplateSpec, UsedTemplate, WorkflowSpec
from foundation_operator.workflows.objects import InvalidWorkflow, WorkflowView

TEMPLATE = {
    "parameters": [
        {"name": "to", "type": "string", "description": "who gets it"},
        {"name": "times", "type": "integer", "value": 1},
        {"name": "tags", "type": "array", "value": []},
    ],
    "steps": [
        {
            "name": "send",
            "agent": "mailer",
            "action": "send",
            "input": {"to": "{{ input.to }}", "times": "{{ input.times }}"},
        },
    ],
    "output": "{{ steps.send.result }}",
    "parallelism": 4,
}
SPEC = TemplateSpec.model_validate(TEMPLATE)


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"to": "ann"}, None),
        ({"to": "ann", "times": 3, "tags": ["a"]}, None),
        ({}, "spec.template.arguments: missing to (a string: who gets it)"),
        ({"to": 5}, "spec.template.arguments.to: 5 is not a string"),
        ({"to": "ann", "times": True}, "spec.template.arguments.times: True is not an integer"),
        ({"to": "ann", "times": 2.5}, "spec.template.arguments.times: 2.5 is not an integer"),
        (
            {"to": "ann", "cc": "bob"},
            "spec.template.arguments.cc: WorkflowTemplate news has no parameter cc (its "
            "parameters: to, times, tags)",
        ),
    ],
)
def test_arguments_are_checked_against_the_parameters(arguments: dict, problem: Any) -> None:
    found = templates.problems("news", SPEC, arguments)
    if problem is None:
        assert found == []
    else:
        assert len(found) == 1 and found[0].startswith(problem), found


def test_a_workflow_runs_the_templates_steps_with_its_arguments_and_its_own_settings() -> None:
    kept = templates.used({"metadata": {"name": "news", "resourceVersion": "42"}, "spec": TEMPLATE})
    assert isinstance(kept, UsedTemplate) and kept.resource_version == "42"
    own = WorkflowSpec.model_validate(
        {"template": {"name": "news", "arguments": {"to": "ann"}}, "suspend": True}
    )
    spec = templates.effective(own, kept)
    assert spec.input == {"to": "ann", "times": 1, "tags": []}
    assert [s.name for s in spec.steps] == ["send"] and spec.output == "{{ steps.send.result }}"
    assert (spec.parallelism, spec.suspend) == (4, True)  # the template's, and its own
    narrow = own.model_copy(update={"parallelism": 2})
    narrow.model_fields_set.add("parallelism")
    assert templates.effective(narrow, kept).parallelism == 2


def test_an_invalid_template_says_what_is_wrong() -> None:
    found = templates.used({"metadata": {"name": "bad"}, "spec": {"steps": []}})
    assert isinstance(found, str) and found.startswith("WorkflowTemplate bad is not valid")


def body(spec: dict, template: dict | None = None) -> dict:
    status = {"template": {"name": "news", "spec": template}} if template else {}
    return {
        "metadata": {"name": "w", "namespace": "ns", "uid": "u"},
        "spec": spec,
        "status": status,
    }


def test_the_operator_checks_the_steps_the_workflow_runs() -> None:
    view = WorkflowView.from_body(
        body({"template": {"name": "news", "arguments": {"to": "a"}}}, TEMPLATE), "img"
    )
    assert [s.name for s in view.spec.steps] == ["send"]
    with pytest.raises(InvalidWorkflow, match="takes its steps, onExit and output from it"):
        WorkflowView.from_body(
            body({"template": {"name": "news"}, "steps": TEMPLATE["steps"]}), "img"
        )
    with pytest.raises(InvalidWorkflow, match="at least one step, or a template"):
        WorkflowView.from_body(body({}), "img")
    broken = {**TEMPLATE, "steps": [{**TEMPLATE["steps"][0], "dependsOn": ["nope"]}]}
    with pytest.raises(InvalidWorkflow, match=r"spec.steps\[0\] \(send\).dependsOn"):
        WorkflowView.from_body(body({"template": {"name": "news"}}, broken), "img")
