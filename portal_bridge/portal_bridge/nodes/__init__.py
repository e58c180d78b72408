"""The ROS 2 nodes (each module has the ``main()`` of one executable) and their shared base class."""
