module github.com/switchboard/switchboard/bench

go 1.26.0
