module modelpilot.local/testbed/pause

go 1.26
