"""Install rules for the portal_bridge ament_python package."""

from glob import glob
import os

from setuptools import find_packages, setup

PACKAGE = 'portal_bridge'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        (os.path.join('share', PACKAGE, 'launch'), glob('launch/*.py')),
        (os.path.join('share', PACKAGE, 'config'), glob('config/*')),
        # the browser console's page, built by `make setup` (npm run build in web/console)
        (os.path.join('share', PACKAGE, 'web', 'console'), glob('web/console/dist/*')),
    ],
    install_requires=['setuptools'],
    # colcon test runs pytest only when the package declares it (else unittest, which finds nothing).
    extras_require={'test': ['pytest', 'pytest-timeout', 'hypothesis']},
    tests_require=['pytest'],
    zip_safe=True,
    maintainer='portal_bridge maintainers',
    maintainer_email='maintainers@portal-bridge.dev',
    description='ROS 2 bridge to LiveKit Portal sessions (robot and operator sides).',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'contract = portal_bridge.cli.contract:main',
            'token = portal_bridge.cli.token:main',
            'robot_bridge = portal_bridge.nodes.robot_bridge:main',
            'operator_bridge = portal_bridge.nodes.operator_bridge:main',
            'sim_robot = portal_bridge.nodes.sim_robot:main',
            'demo_teleop = portal_bridge.nodes.demo_teleop:main',
            'recorder = portal_bridge.nodes.recorder:main',
            'console = portal_bridge.nodes.console:main',
            'bag_to_lerobot = portal_bridge.cli.bag_to_lerobot:main',
            'shadow_report = portal_bridge.cli.shadow_report:main',
            'doctor = portal_bridge.cli.doctor:main',
        ],
    },
)
