module github.com/switchboard/switchboard/proto

go 1.26
