// Stands in, in the tests' flanneld build only, for the Tencent Cloud VPC SDK module that flannel's
// tencent-vpc backend imports and that the Go module proxy reachable here does not serve. It has the
// shapes flannel uses and answers every call with an error: the tests run flannel's vxlan backend.
module github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/vpc

go 1.22
