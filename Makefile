# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create the project-local virtual environment (.venv) from PyPI on first use.
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SHARED_MODELS := $(abspath ../shared/models)

# SCRFD weights are used when present (research licence, never committed); CenterFace otherwise.
ifneq ($(wildcard $(SHARED_MODELS)/det_500m.onnx),)
export AV_PRIVACY_MODELS ?= $(SHARED_MODELS)
endif
export FASTDDS_DEFAULT_PROFILES_FILE ?= $(abspath config/fastdds_large_frames.xml)
export RMW_IMPLEMENTATION ?= rmw_fastrtps_cpp
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST

.PHONY: venv test demo bench lint clean adversarial sample-bag FORCE

# launch, launch_ros and message_filters are not on PyPI: when ../shared/ros_wheels/ holds wheels
# built from the ROS 2 Humble branches they are installed too (--no-deps; lark and osrf-pycommon
# are their runtime dependencies on PyPI), so the launch files run in the tests. Without that
# folder everything else works and the launch tests skip, saying how to get them.
ROS_WHEELS_DIR := $(abspath ../shared/ros_wheels)
ROS_WHEELS := $(sort $(wildcard $(ROS_WHEELS_DIR)/*.whl))
ROS_WHEELS_STAMP := $(VENV)/.ros_wheels
ROS_WHEELS_LIST := $(VENV)/.ros_wheels.list

venv: $(STAMP) $(ROS_WHEELS_STAMP)

$(STAMP): requirements-dev.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -r requirements-dev.txt
	$(VPY) -m pip install --quiet -e .
	touch $(STAMP)

# The list of wheel names is rewritten only when it changes (a wheel added, removed or renamed),
# so the install below re-runs then, or when a wheel file is newer, and never otherwise.
$(ROS_WHEELS_LIST): FORCE | $(STAMP)
	@echo '$(notdir $(ROS_WHEELS))' | cmp -s - $@ || echo '$(notdir $(ROS_WHEELS))' > $@

$(ROS_WHEELS_STAMP): $(ROS_WHEELS_LIST) $(ROS_WHEELS) $(STAMP)
ifneq ($(ROS_WHEELS),)
	$(VPY) -m pip install --quiet --no-deps $(ROS_WHEELS)
	$(VPY) -m pip install --quiet lark osrf-pycommon
else
	@echo 'No $(ROS_WHEELS_DIR): launch and launch_ros are not installed; the launch tests skip.'
endif
	touch $@

FORCE:

test: venv
	$(VPY) -m pytest -q -p no:cacheprovider test

demo: venv
	$(VPY) -m av_privacy_ros.demo --output demo_output

# Every scripts/bench*.py prints its own table (core, node over DDS, bag, tracking); one that
# needs SCRFD weights is skipped without them, and the last line says which and why.
bench: venv
	@$(VPY) scripts/run_benchmarks.py

# A small rosbag2 with faces, depth, camera_info and /tf_static, plus what evaluate_masks needs
# (reference masks, face boxes, sessions.yaml), to try both tools on; see docs/bags.md.
sample-bag: sample_data/sessions.yaml

sample_data/sessions.yaml: | venv
	$(VPY) scripts/make_sample_bag.py --output sample_data

# The adversarial suite alone, with its figures (cases tried, raw face pixels, inputs lost).
adversarial: venv
	$(VPY) -m pytest -q -p no:cacheprovider test/adversarial

lint: venv
	$(VPY) -m pytest -q -p no:cacheprovider test/test_flake8.py test/test_pep257.py \
		test/test_mypy.py

clean:
	rm -rf $(VENV) demo_output bench_output sample_data build install log *.egg-info \
		.mypy_cache
