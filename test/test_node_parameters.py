"""The node declares the whole parameter table, and every live parameter really is live."""

from __future__ import annotations

from typing import Any, Iterator

from anonymizer_harness import DOMAIN_ID, scrfd_path
from av_privacy_ros import params
from av_privacy_ros.node import AnonymizerNode
import pytest
import rclpy
from rclpy.context import Context
from rclpy.parameter import Parameter


@pytest.fixture(scope='module')
def node() -> Iterator[AnonymizerNode]:
    """Return the anonymizer, with its real masker and detector, in this process."""
    context = Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    overrides = [Parameter('detector.model_path', value=scrfd_path())] if scrfd_path() else []
    anonymizer = AnonymizerNode(context=context, namespace='/parameters_test',
                                parameter_overrides=overrides)
    try:
        yield anonymizer
    finally:
        anonymizer.destroy_node()
        rclpy.shutdown(context=context)


def _other_value(spec: params.ParamSpec) -> Any:
    """Return a valid value different from the default."""
    if spec.choices:
        return next(choice for choice in spec.choices if choice != spec.default)
    if isinstance(spec.default, bool):
        return not spec.default
    if isinstance(spec.default, (int, float)):
        value = spec.max_value if spec.default != spec.max_value else spec.min_value
        return type(spec.default)(value)
    raise AssertionError('no alternative for %s' % spec.name)


def test_every_parameter_is_declared_with_its_description_and_range(
        node: AnonymizerNode) -> None:
    """``ros2 param describe`` shows the table's description, range, choices, read-only."""
    for spec in params.PARAMETERS:
        assert node.has_parameter(spec.name), spec.name
        descriptor = node.describe_parameter(spec.name)
        assert descriptor.description == spec.description
        assert descriptor.read_only == spec.read_only, spec.name
        if spec.choices:
            assert all(choice in descriptor.additional_constraints for choice in spec.choices)
        if spec.max_reason:
            # The privacy floor: no range in the descriptor, so that the node's own reason is
            # what a refused set shows; describe still tells the range and why.
            assert not descriptor.floating_point_range
            assert 'to %s' % params._fmt(spec.max_value) in descriptor.additional_constraints
            assert spec.max_reason in descriptor.additional_constraints
        elif spec.type_name == 'double' and spec.min_value is not None:
            assert descriptor.floating_point_range[0].from_value == spec.min_value
            assert descriptor.floating_point_range[0].to_value == spec.max_value
        if spec.type_name == 'int' and spec.min_value is not None:
            assert descriptor.integer_range[0].from_value == spec.min_value
            assert descriptor.integer_range[0].to_value == spec.max_value
        if spec.name != 'detector.model_path':
            assert node.get_parameter(spec.name).value == spec.default


@pytest.mark.parametrize('spec', [s for s in params.PARAMETERS if not s.read_only],
                         ids=lambda s: s.name)
def test_live_parameter_accepts_a_valid_change(node: AnonymizerNode,
                                               spec: params.ParamSpec) -> None:
    """Each live parameter takes a valid new value, and takes its default back."""
    for value in (_other_value(spec), spec.default):
        result = node.set_parameters([Parameter(spec.name, value=value)])[0]
        assert result.successful, '%s=%r: %s' % (spec.name, value, result.reason)
        assert node.get_parameter(spec.name).value == value


@pytest.mark.parametrize('spec', [s for s in params.PARAMETERS if s.read_only],
                         ids=lambda s: s.name)
def test_read_only_parameter_is_refused(node: AnonymizerNode,
                                        spec: params.ParamSpec) -> None:
    """Topics, detector, QoS and sync settings cannot change while the node runs."""
    result = node.set_parameters([Parameter(spec.name, value=spec.default)])[0]
    assert not result.successful and 'read-only' in result.reason


def test_live_change_reaches_the_masker(node: AnonymizerNode) -> None:
    """A new threshold and mosaic block are what the masker uses for the next frame."""
    masker = node._masker
    assert node.set_parameters([Parameter('detector.conf_thresh', value=0.45),
                                Parameter('anonymizer.block', value=32)])[0].successful
    assert masker.conf_thresh == pytest.approx(0.45) and masker.anon_block == 32
    refused = node.set_parameters([Parameter('anonymizer.noise_mode', value='blur')])[0]
    assert not refused.successful and 'noise_mode' in refused.reason
    assert node.set_parameters([Parameter('detector.conf_thresh', value=0.3),
                                Parameter('anonymizer.block', value=24)])[0].successful


def test_threshold_above_the_privacy_floor_is_refused_and_weakenings_are_reported(
        node: AnonymizerNode) -> None:
    """A live conf_thresh above 0.5 is refused with the reason; weaker settings are named."""
    masker = node._masker
    refused = node.set_parameters([Parameter('detector.conf_thresh', value=0.95)])[0]
    assert not refused.successful and 'privacy floor' in refused.reason
    assert node.get_parameter('detector.conf_thresh').value == pytest.approx(0.3)
    assert masker.conf_thresh == pytest.approx(0.3)
    assert node._weakenings == []
    try:
        assert node.set_parameters_atomically([
            Parameter('detector.conf_thresh', value=0.5),
            Parameter('tracking.hold_frames', value=0)]).successful
        assert [s.split(' is ')[0] for s in node._weakenings] == [
            'detector.conf_thresh', 'tracking.hold_frames']
    finally:
        assert node.set_parameters_atomically([
            Parameter('detector.conf_thresh', value=0.3),
            Parameter('tracking.hold_frames', value=6)]).successful
    assert node._weakenings == []
